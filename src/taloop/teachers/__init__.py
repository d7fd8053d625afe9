"""Teachers (simulated and real), the content-addressed reply cache and the budget ledger."""
