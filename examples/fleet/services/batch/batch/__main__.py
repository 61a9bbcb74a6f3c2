from batch.report import summary

print(summary([1.0, 2.0, 3.5]))
