"""Known answers from outside our code: card images written by hand from docs/reference.md,
golden NHSO bodies, and what each must decode to. Nothing here imports ``agent``."""
