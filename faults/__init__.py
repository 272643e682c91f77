"""glowlab's fault campaign (issue 7): real processes under real faults, figures in
docs/reliability.md. Run it with ``make faults`` or ``python -m faults [--quick]``."""
