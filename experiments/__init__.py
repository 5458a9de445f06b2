"""The paper's experiments (Bose & Kobyzev, 2021) at CPU scale, run through ``flows``.

``python -m experiments [--quick] [--out DIR] [--parts 1,2,3]`` trains every model with
``flows.train`` exactly as the service's worker does (``build_flow(config)``, the same
``TrainConfig``), reloads it from its checkpoint with ``flows.checkpoint.load_flow`` as the API
does, evaluates it with ``flows.metrics``, and writes ``report.md`` with tables and PNG figures.

Parts: 1. synthetic 2-D densities (:mod:`experiments.synthetic`), 2. rotated digits
(:mod:`experiments.digits`), 3. the coupling ablation on RGB patches
(:mod:`experiments.coupling`); part 4, the full-scale GPU runs through the service, is in
``experiments/gpu/``.

Each part is three steps with typed results between them: ``run_<part>`` trains (returning the
reloaded models as ``<Part>Runs``), ``evaluate_<part>`` measures them (``<Part>Result``, whose
``numbers()`` is the part's entry in ``results.json``), and ``render_<part>`` draws the figure
and writes the report's section. Part 5 reuses the benchmark's rows, which evaluate as they run.
"""
