"""Where frames come from and where they go: sources, decoding, the Parquet shard format, readers."""
