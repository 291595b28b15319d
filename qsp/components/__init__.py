"""Model components: pure vector-field pieces over named states and parameters."""
from .pk import Depot, LinearDisposition, time_varying_clearance

__all__ = ["Depot", "LinearDisposition", "time_varying_clearance"]
