"""How the images formed: for runs whose outputs were formed by optimisation (CLIP-guided
models), the images an output passed through, every k-th step, as a film strip per run."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from tracer_pipeline.reporting.data import FormationData, Report
from tracer_pipeline.reporting.sections.format import figure, markdown_table, plural, short_id

MAX_RUNS = 8  # rows of the film strip; the table holds every run
FRAME_PX = 64  # each frame's height in the strip
LABEL_PX = 12


def film_strip(formations: list[FormationData]) -> bytes | None:
    """One row per run: its frames left to right, scaled to the same height, each labelled with
    its step. PNG bytes, or None when there is nothing to draw."""
    rows = formations[:MAX_RUNS]
    if not rows:
        return None
    def scaled(image: Image.Image) -> Image.Image:
        return image.resize((max(1, image.width * FRAME_PX // image.height), FRAME_PX), Image.Resampling.NEAREST)
    strips = [[(step, scaled(image)) for step, image in row.frames] for row in rows]
    width = max(sum(image.width + 2 for _, image in strip) for strip in strips)
    sheet = Image.new("RGB", (width, len(strips) * (FRAME_PX + LABEL_PX + 2)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, strip in enumerate(strips):
        x, y = 0, r * (FRAME_PX + LABEL_PX + 2)
        for step, image in strip:
            draw.text((x + 1, y), f"step {step}", fill=(0, 0, 0))
            sheet.paste(image, (x, y + LABEL_PX))
            x += image.width + 2
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def section(report: Report, formations: list[FormationData]) -> list[str]:
    """Adds table ``formation`` (one row per run with intermediate outputs); nothing when the
    experiment has none."""
    if not formations:
        return []
    rows = [{"run_id": f.run_id, "model": f.model, "invocation": f.sequence_number, "frames": len(f.frames),
             "steps": f.frames[-1][0]} for f in formations]
    report.tables["formation"] = rows
    lines = ["## 8. How the images formed", "",
             f"{plural(len(rows), 'run')} with outputs formed by optimisation. For each, the first such output is "
             "shown as it formed: the start (step 0), every k-th optimisation step and the last, as stored with its "
             "invocation (`k` = steps // frames, the model's options)."]
    lines += markdown_table(rows, [("run_id", "run"), ("model", "model"), ("invocation", "invocation"),
                                   ("frames", "frames"), ("steps", "steps")], "formation")
    names = ", ".join(short_id(f.run_id) for f in formations[:MAX_RUNS])
    lines += figure(report, "formation.png", film_strip(formations), f"how the images formed ({names})")
    if len(formations) > MAX_RUNS:
        lines.append(f"*The film strip shows the first {MAX_RUNS} runs; the table holds all {len(formations)}.*")
    return lines
