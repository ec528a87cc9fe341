"""Host adapters: GitHub (gidgethub) and GitLab (python-gitlab), behind one small interface."""
