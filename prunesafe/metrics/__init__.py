"""prunesafe.metrics"""
