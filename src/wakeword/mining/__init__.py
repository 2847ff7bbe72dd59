"""Hard-negative mining: the SQLite store of sources, candidates, decisions and jobs; the miner; the
injection of confirmed clips into the training split."""
