"""prunesafe.data"""
