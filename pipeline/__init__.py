"""Where frames come from and where they go: sources, decoding, Parquet shards, readers."""
