"""The Responses API (`/v1/responses`) with the image_generation tool: Limner as its own
orchestrator over the same admitted image runs the Images API uses.

request.py validates a body; conversation.py reads its input items and the stored chain into a
conversation; mainline.py decides the turn (the image call, its prompt, the reply); turn.py runs
it, as a response object or its stream of events; store.py keeps responses in the database.
"""
