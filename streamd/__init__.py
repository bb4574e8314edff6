"""streamd: streaming anomaly detection for edge boxes.

The online side (this package) never imports torch; training lives in the sibling
package ``training`` and is an optional extra.
"""

__version__ = "0.1.0"
