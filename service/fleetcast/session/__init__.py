"""The one subscription core every transport uses: subscribe, resume, gap, limits, close."""
