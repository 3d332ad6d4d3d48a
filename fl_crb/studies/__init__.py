"""Studies of what the paper only claims: the privacy and the communication cost of CRB-DRQN.

`fl-crb study privacy` (`privacy_study`): who observes what in each design
(`observation_table`), how well an edge learner can tell which terminal a pooled
trajectory came from (`trajectory_source`, `heterogeneity`, `linkability`), and the price
of calibrated noise on uploads (`upload_noise`, `noisy_training`); `privacy_report`
writes the plots and the summary.

`fl-crb study overhead` (`overhead_study`): bytes per terminal per round and per decision,
split into payload, encryption and framing (`overhead_model`), set against bytes
measured from real encoded and sealed uploads and real Flower exchanges
(`wire_measurement`) and from whole federated runs (`federated_accounting`);
`overhead_report` writes the plot and the summary. `report` holds the CSV and markdown
helpers both use.

docs/studies.md describes both, what is measured and what is analytic.
"""
