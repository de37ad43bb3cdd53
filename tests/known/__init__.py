"""Known answers from outside our code: card images written by hand from the shared docs,
golden NHSO bodies, and what each must decode to. Nothing here imports ``agent``."""
