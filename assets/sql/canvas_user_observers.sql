-- user_observers.csv: guardian -> student links from OneRoster agents (header only when observers are off).
SELECT observer_id, student_id, status
FROM rb_canvas_user_observer
ORDER BY ALL
