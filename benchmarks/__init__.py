"""Speed, memory and efficacy at scale (`make bench`). Run as ``python -m benchmarks.NAME``: this
package starts the process, so it sets the offline switches before any library loads."""

from flywheel._offline import apply_offline_defaults

apply_offline_defaults()
