"""prunesafe.plotting"""
