"""The vector task's own tests: none beyond task_cases, which the shared machinery tests read."""
