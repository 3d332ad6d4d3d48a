"""The paper's learning baselines: Decentralized AC, QMIX, MAPPO and JODRL-PP (reconstructed).

Each algorithm is one module that reads top to bottom as the method does
(`decentralized_ac`, `qmix`, `mappo`, `jodrl_pp`); what they share is elsewhere, once:
`rollout` (an episode in the simulator with delayed rewards matched to decisions, masks for
terminals without a task, the drain before any return is computed, the global state of the
centralized trainers, GAE), `networks` (the observation features and MLPs), `trainer` (the
episode loop, ε, validation and checkpoints behind `fl-crb train`), `policy` (a trained run
as a greedy `Policy` for `fl-crb evaluate`). `settings` holds every hyperparameter with its
source and imports no torch; nothing is re-exported here, so importing `fl_crb.marl.settings`
stays light.
"""
