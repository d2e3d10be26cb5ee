from tracer_pipeline.cli import main

main()
