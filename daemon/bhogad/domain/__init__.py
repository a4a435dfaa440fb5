"""The domain: the quota keeper that owns state, and the pure model, ranking, pricing and budgets."""
