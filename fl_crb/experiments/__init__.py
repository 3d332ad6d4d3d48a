"""The paper's experiments in simulation: Figures 4-6, reproduced by `fl-crb reproduce`.

`settings` (full and quick scale) → `runs` (training runs and held-out evaluations,
cached on disk) → `figures` (rows per figure) → `plots` (PNG), `report` (markdown, with
`paper_results` beside ours), orchestrated by `reproduce`. `convergence` defines the
convergence episode of Figure 4.

`fl-crb sweep`: `sweep_grid` (the grid, from flags or YAML) → `sweep` (cells, cache keys,
tables, plots). Both it and `reproduce` cut their work into `cells` (train and evaluate
one policy at one point with one seed) and hand them to `executors` (this process,
local worker processes, or Ray tasks).
"""
