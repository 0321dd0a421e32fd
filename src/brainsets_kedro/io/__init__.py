"""Files on disk: atomic writes and temporary names, downloads, the catalog datasets."""
