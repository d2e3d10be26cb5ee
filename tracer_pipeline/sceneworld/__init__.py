"""SceneWorld: a miniature world of simple scenes with small trained models that run offline.

One to three coloured shapes on a grey background, captions from a small template family
(:mod:`.grammar`), prompts as people write them read into scenes (:mod:`.prompts`), a procedural
renderer that makes the training data (:mod:`.render`), and models trained on it and shipped in
``weights/`` (:mod:`.models`, registered as SceneT2I, SceneT2ISupervised, SceneI2T,
SceneI2TSampled and SceneCLIP). Runs of these models drift, get stuck and collapse for reasons one can
read off the captions, which the tiny (random) and dummy models cannot show. SceneGen
(:mod:`.scenegen`), an unconditional generator of one-object scenes, is what steering runs steer.

Retrain: ``python -m tracer_pipeline.sceneworld.train --out DIR``;
measure: ``python -m tracer_pipeline.sceneworld.evaluate [--weights DIR]``.
"""
