"""The domain: snapshots, detection, findings and fixes. Nothing here imports aiogram."""
