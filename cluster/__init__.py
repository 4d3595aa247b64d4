"""Distribution on Ray: parameter-server shards, workers, schedules, checkpoints, faults."""
