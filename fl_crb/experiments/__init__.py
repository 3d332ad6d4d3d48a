"""The paper's experiments in simulation: Figures 4-6, reproduced by `fl-crb reproduce`.

`settings` (full and quick scale) → `runs` (training runs and held-out evaluations,
cached on disk) → `figures` (rows per figure) → `plots` (PNG), `report` (markdown, with
`paper_results` beside ours), orchestrated by `reproduce`. `convergence` defines the
convergence episode of Figure 4.
"""
