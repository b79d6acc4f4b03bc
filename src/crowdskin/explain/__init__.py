"""Where a model looks: Grad-CAM maps of the diagnosis output (`gradcam`), their relevance mass in
a region (`relevance`), and the explanation stage's per-model job (`job`)."""
