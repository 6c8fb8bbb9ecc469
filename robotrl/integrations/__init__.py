"""Adapters from robotrl's env contract to other RL libraries.

Each adapter lives in its own module and imports its library lazily, so ``import robotrl`` never
needs them: ``robotrl.integrations.sb3`` needs ``pip install stable-baselines3``.
"""
