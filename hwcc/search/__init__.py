"""The search: budgets, the NetAdapt loop and what it may change."""
