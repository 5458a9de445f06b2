"""The paper's experiments (Bose & Kobyzev, 2021) at CPU scale, run through ``flows``.

``python -m experiments [--quick] [--out DIR] [--parts 1,2,3]`` trains every model with
``flows.train`` exactly as the service's worker does (``build_flow(config)``, the same
``TrainConfig``), reloads it from its checkpoint with ``flows.checkpoint.load_flow`` as the API
does, evaluates it with ``flows.metrics``, and writes ``report.md`` with tables and PNG figures.

Parts: 1. synthetic 2-D densities (:mod:`experiments.synthetic`), 2. rotated digits
(:mod:`experiments.digits`), 3. the coupling ablation on RGB patches
(:mod:`experiments.coupling`); part 4, the full-scale GPU runs through the service, is in
``experiments/gpu/``.
"""
