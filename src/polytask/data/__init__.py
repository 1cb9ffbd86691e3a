"""Data path: schema, encoders, columnar tensor table, batch loader, file I/O, datasets."""
