# The crowd stage's rules.
