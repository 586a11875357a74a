"""Entry points that wire the components together: training, prediction, publishing."""
