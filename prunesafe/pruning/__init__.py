"""prunesafe.pruning"""
