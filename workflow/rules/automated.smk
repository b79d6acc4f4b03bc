# The automated stage's rules.
