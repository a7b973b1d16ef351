"""The benchmark's data and metrics half (thesis §6.1, DESIGN.md §4).

* ``face_model`` — a procedural morphable face (identity, expression, albedo) on the canonical grid.
* ``synth`` — renders it at random pose/light into ``data/synth/{train,val,test}`` with ground truth.
* ``bfm`` — Basel Face Model 2009 (.mat) / 2017 (.h5) readers that make the same set from a user's file.
* ``metrics`` — SIDE / MAD as Unsup3D evaluates them, plus the thesis's eq. 6.1 / 6.2, labelled.
* ``registry`` — every variant (row of the table), once: its kind and what it reads.
* ``protocol`` — 1000 faces → 10 subgroups × 100, 10 repeats; variants are ``predict_depth`` callables.
* ``variants`` — the table's rows built from the pipeline's own code (AE, views + fine-tuning, correction).
* ``report`` — reports/benchmark.md beside the thesis's numbers, metrics.json, plots.
"""
