# A faithful reconstruction, from memory, of the FileOperation of the IoP (Interoperability
# on Python) "formation" tutorial, as it stands once the tutorial has made `filename` a
# setting. It is not run here: docs/tutorial.md compares its size with
# crates/tutorial/src/file_operation.rs, and a test counts the non-blank, non-comment
# lines of both.

# ANCHOR: file_operation
from iop import BusinessOperation
import os

from msg import FormationRequest


class FileOperation(BusinessOperation):

    def on_init(self):
        if hasattr(self, 'path'):
            os.chdir(self.path)
        else:
            os.chdir("/tmp")
        if not hasattr(self, 'filename'):
            self.filename = 'toto.csv'
        return None

    def write_formation(self, request: FormationRequest):
        id = salle = nom = ""
        if request.formation is not None:
            id = str(request.formation.id)
            salle = request.formation.salle
            nom = request.formation.nom
        line = id + " : " + salle + " : " + nom + "\n"
        self.put_line(self.filename, line)
        return None

    def on_message(self, request):
        return None

    def put_line(self, filename, string):
        try:
            with open(filename, "a", encoding="utf-8", newline="") as outfile:
                outfile.write(string)
        except Exception as error:
            raise error
# ANCHOR_END: file_operation
