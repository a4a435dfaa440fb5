"""Discovery: provider drivers that read real quota, and the poller that runs them."""
