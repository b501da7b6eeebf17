DROP TABLE public.formation;
