# The train stage's rules.
