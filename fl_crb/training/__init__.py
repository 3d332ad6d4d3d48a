"""The training harness: how CRB-DRQN and every learning baseline are trained in simulation.

Data flow: a `config.TrainConfig` (the algorithm, its hyperparameters, ε and validation)
→ `run.TrainingRun` (a run folder: `run.json`, `metrics.jsonl`, checkpoints, `best.pt`;
resumable) → the trainer of the algorithm (`drqn_trainer.Trainer` over a `schemes` scheme
of `fl_crb.learn` learners for CRB-DRQN and independent DRQN, `marl_trainer.MarlTrainer`
for the baselines of `fl_crb.marl`) → `trained_policy`, which plays a finished run as a
greedy policy for evaluation. Nothing here touches the network or the federation.

This package sits above `fl_crb.learn` (the method) and `fl_crb.marl` (the baselines) and
re-exports nothing, so that importing `fl_crb.training.config` stays torch-free.
"""
