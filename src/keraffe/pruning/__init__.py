"""keraffe.pruning"""
