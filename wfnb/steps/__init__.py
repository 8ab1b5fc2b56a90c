"""One module per step kind; `base` says what an executor is and finds them."""
