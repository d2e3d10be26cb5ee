-- Run once by the postgres image on a fresh volume: the trace store's database is POSTGRES_DB
-- ("trace"); Dagster's storage gets its own.
CREATE DATABASE dagster;
