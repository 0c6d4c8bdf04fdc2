"""An authorizer for tests: every user may read hubctl resources, nobody may change them."""

from jupyter_server.auth.authorizer import Authorizer


class ReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        if resource == "hubctl":
            return action == "read"
        return True
