"""Studies as DVC experiments: study files (spec), running and aggregating them (engine),
reading cells (sources), the aggregations (aggregate, headroom) and the studies page (page)."""
