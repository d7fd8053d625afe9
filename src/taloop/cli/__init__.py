"""The `taloop` command line: running the pipeline with a time estimate, studies, comparisons."""
