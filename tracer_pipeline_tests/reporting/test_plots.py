"""Figures are PNG bytes that depend on the data only."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tracer_pipeline.reporting import plots
from tracer_pipeline.reporting.measures import measure_run
from tracer_pipeline_tests.reporting.runs import basis, make_run, wander


def test_the_same_data_give_the_same_bytes_without_metadata() -> None:
    runs = [make_run(f"r{i}", wander(np.random.default_rng(i), basis(0), 8, 0.4), seed=i, order=i, with_images=True)
            for i in range(2)]
    measures = [measure_run(run) for run in runs]
    first = plots.stuck_timeline_figure(measures)
    assert first == plots.stuck_timeline_figure(measures)
    image = Image.open(io.BytesIO(first))
    assert image.format == "PNG" and image.size == (700, 132)
    assert not {"Software", "Creation Time", "date:create"} & set(image.info)

    sheet = plots.contact_sheet_figure([plots.ContactRow("r0", runs[0].images.read(), "a caption " * 40),
                                        plots.ContactRow("r1", runs[1].images.read(), None)])
    assert sheet == plots.contact_sheet_figure([plots.ContactRow("r0", runs[0].images.read(), "a caption " * 40),
                                                plots.ContactRow("r1", runs[1].images.read(), None)])
    assert plots.projection_figure(runs[:1]) is not None
    assert plots.projection_figure([make_run("tiny", wander(np.random.default_rng(0), basis(0), 1, 0.4))]) is None
