"""nbgrader configuration for instructors grading in this folder.

solutions/   nbgrader source notebooks (solutions + hidden tests)
assignments/ the student release, generated: `vizlib release` (never edit by hand)

Gradebooks, submissions and feedback stay out of git (see .gitignore).
"""
c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.course_id = "seeing-inside-convnets"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ExecutePreprocessor.timeout = 300
