"""What every layer uses: errors, files and paths, logging, profiling, precision, run manifests,
statistics."""
