"""vpes billing: Stripe Checkout self-signup and webhooks that turn payments into servers."""
