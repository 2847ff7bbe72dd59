"""Multi-objective hyperparameter search: Optuna NSGA-II over (val pAUC, latency), sequential trials,
a PBT exploit-and-explore scheduler on study.ask/tell/enqueue_trial, resumable after any kill."""
